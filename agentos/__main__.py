from agentos.user.cli import main

main()
