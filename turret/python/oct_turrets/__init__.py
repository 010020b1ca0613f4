"""oct's stand-in for the oct_turrets package, so OCT scripts run unchanged under oct's turret."""
