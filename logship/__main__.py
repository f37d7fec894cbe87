from memlogd.scripts import logship

logship()
