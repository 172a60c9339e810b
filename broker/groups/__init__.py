"""Consumer groups: membership (join, sync, heartbeat, leave) and committed offsets."""
