"""Machine figures (CPU, memory, disk, network, uptime) for the dashboard and the mobile widgets."""
