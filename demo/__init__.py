"""The demo site: simulators, daemon and a short story on this machine (`gatekeeper demo`)."""
