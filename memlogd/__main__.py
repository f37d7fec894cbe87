from memlogd.entry import memlogd

memlogd()
