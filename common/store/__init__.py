"""MySQL: the campaign table (pending rows, outcomes, history) and rows added through the API."""
