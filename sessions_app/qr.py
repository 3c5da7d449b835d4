"""QR codes as images: what the dashboard shows while a session waits for a scan."""

import io

import segno


def qr_svg(payload: str) -> str:
    """An inline SVG of the QR code (no XML declaration: it goes straight into a page)."""
    buffer = io.BytesIO()
    segno.make(payload, error="m").save(buffer, kind="svg", scale=5, border=2, xmldecl=False)
    return buffer.getvalue().decode()
