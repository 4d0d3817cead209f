"""Pure-torch definitions of every op, one module per op family: the spec that tests and benchmarks
compare against, and the fallback backend ("torch") where no compiled kernel is available."""
