"""Apps on finished runs: the model zoo and transfer learning."""
