"""The benchmark suite: definitions (`suite`), dataset adapters (`datasets`), metrics, the evaluation loop, reports, `codebind-bench`."""
