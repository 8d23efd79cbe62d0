"""Text messages with per-row variables: `{column2}` takes the row's column2
(the columns are checked and read by the producer: Settings.message_columns)."""


def render(text: str, params: dict) -> str:
    return text.format_map(params)
