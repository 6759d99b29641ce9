from predictd.cli import main

main()
