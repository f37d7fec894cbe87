from memlogd.entry import logwrite

logwrite()
