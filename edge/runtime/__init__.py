"""Process plumbing: systemd notification, handing work to the loop, rate-limited logs."""
