"""What a message says: the campaign's template or text (WHATSAPP_TEMPLATE,
WHATSAPP_TEXT, where `{column2}` takes the row's column2), or the row's own
template or text from TEMPLATE_COLUMN / TEXT_COLUMN when those are set and
the row has one. The columns are checked and read by the producer
(Settings.message_columns)."""

from dataclasses import dataclass


def render(text: str, params: dict) -> str:
    return text.format_map(params)


@dataclass(frozen=True)
class Content:
    template: str
    text: str | None
    template_column: str | None = None
    text_column: str | None = None

    def own_text(self, params: dict) -> str | None:
        """The row's own text, sent as it is: a row's data is never a format string."""
        return params.get(self.text_column) or None if self.text_column else None

    def own_template(self, params: dict) -> str | None:
        return params.get(self.template_column) or None if self.template_column else None

    def text_for(self, params: dict) -> str | None:
        """The row's text, else the campaign's (rendered), else None (a template message)."""
        own = self.own_text(params)
        if own is not None:
            return own
        return render(self.text, params) if self.text is not None else None

    def template_for(self, params: dict) -> str:
        return self.own_template(params) or self.template


def content_of(settings) -> Content:
    return Content(settings.template, settings.text, settings.template_column, settings.text_column)
