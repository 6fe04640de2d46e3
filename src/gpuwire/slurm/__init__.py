"""Slurm integration (docs/scale-out.md): job tokens on the server (jobs.py),
admin requests from Slurm nodes (admin_client.py), the prolog, epilog and
TaskProlog commands (hooks.py), and `gpuwire run --slurm` (alloc.py)."""
