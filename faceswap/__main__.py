from faceswap.cli import main

raise SystemExit(main())
