"""What every app writes: flow rules, the pipeline they fit, and the desired flow state."""
