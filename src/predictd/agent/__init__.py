"""The remediation agent: a policy turns what the monitor found into proposed actions, people
with the `approve` scope decide the risky ones, and an executor runs approved actions exactly
once across replicas."""
