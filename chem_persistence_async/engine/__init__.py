"""The engine: steps, retry policy, repositories, ``FlowEngine`` and the demo flow."""
