from kmsg.cli import main

main()
