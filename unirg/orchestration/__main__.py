"""`python -m unirg.orchestration runtime-env`: the runtime env JSON `make submit` hands to `ray job submit`."""

from unirg.orchestration.ray_cluster import main

raise SystemExit(main())
