"""The local API's routes, one router per concern, each made over the gate's services (edge.api.facade)."""
