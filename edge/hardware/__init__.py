"""Hardware supervision: lock outputs, door contacts, site inputs, device health."""
