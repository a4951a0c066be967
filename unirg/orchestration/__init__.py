"""Ray orchestration: starting or joining Ray and placing workers (`ray_cluster`), and launching the
trainer as N Ray-placed torch.distributed processes (`launch`)."""

from unirg.orchestration.ray_cluster import (
    LOOPBACK,
    SUBMIT_EXCLUDES,
    ClusterError,
    check_budget,
    ensure_ray,
    main,
    ray_address,
    resource_budget,
    reward_actor_options,
    rollout_bundles,
    rollout_placement_group,
    submit_runtime_env,
    trainer_bundles,
    trainer_gpus,
    wait_for_budget,
)

__all__ = [
    "LOOPBACK", "SUBMIT_EXCLUDES", "ClusterError", "check_budget", "ensure_ray", "main", "ray_address", "resource_budget",
    "reward_actor_options", "rollout_bundles", "rollout_placement_group", "submit_runtime_env", "trainer_bundles",
    "trainer_gpus", "wait_for_budget",
]
