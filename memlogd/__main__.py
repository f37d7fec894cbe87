from memlogd.scripts import memlogd

memlogd()
