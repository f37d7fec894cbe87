from memlogd.entry import logship

logship()
