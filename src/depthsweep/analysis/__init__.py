"""What finished runs show: summaries, the verdict, figures, diagnostics, transfer reports."""
