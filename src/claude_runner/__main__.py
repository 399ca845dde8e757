from claude_runner.cli import main

raise SystemExit(main())
