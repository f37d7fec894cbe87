from demo.boot import main

main()
