from memlogd.entry import kmsg

kmsg()
