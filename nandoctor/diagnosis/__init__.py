"""From a run's own numbers to a diagnosis: findings, causes, recommendations, verification."""
