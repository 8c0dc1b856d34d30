"""The decision core: the pure policy, the gate that applies it, modes, what a decision leaves."""
