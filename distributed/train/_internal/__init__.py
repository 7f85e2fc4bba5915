"""The Trainer's Ray plumbing (private, as Ray Train's ``_internal``): starting or joining Ray,
and the group of worker actors in one placement group."""
