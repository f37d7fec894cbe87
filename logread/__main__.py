from memlogd.entry import logread

logread()
