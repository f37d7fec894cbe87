from memlogd.scripts import logread

logread()
