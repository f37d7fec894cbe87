from memlogd.scripts import logwrite

logwrite()
