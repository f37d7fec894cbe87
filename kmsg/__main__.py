from memlogd.scripts import kmsg

kmsg()
