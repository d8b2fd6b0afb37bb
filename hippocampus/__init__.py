"""hippocampus — replay memory of transitions and sequences (DESIGN §6): `replay.ReplayMemory`."""
