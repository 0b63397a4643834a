"""Nova's own tests run against virtdriver's Nova drivers (a unittest suite; see run.sh)."""
