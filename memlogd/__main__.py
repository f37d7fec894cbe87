from memlogd.cli import main

main()
