"""Device drivers: GenICam cameras, lock-in thermography, UR5 arm, laser-scanner exports, capture sessions."""
