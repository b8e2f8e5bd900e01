"""The system libraries the later apps rely on are installed by the project's own files."""

from __future__ import annotations

import io
import shutil

import pytest


def test_weasyprint_renders_a_pdf_that_pypdf_reads_back():
    from pypdf import PdfReader
    from weasyprint import HTML

    pdf = HTML(string="<h1>Control Site QMS</h1><p>Page one.</p>").write_pdf(pdf_variant="pdf/a-3b")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    assert "Control Site QMS" in reader.pages[0].extract_text()


@pytest.mark.skipif(not shutil.which("pdftoppm"), reason="poppler-utils is installed by .ci/run")
def test_pdf_pages_can_be_rendered_to_images(tmp_path):
    import subprocess

    from weasyprint import HTML

    source = tmp_path / "page.pdf"
    HTML(string="<p>Look at me.</p>").write_pdf(source)
    subprocess.run(  # noqa: S603
        ["pdftoppm", "-png", "-r", "40", str(source), str(tmp_path / "page")],  # noqa: S607
        check=True,
    )
    assert list(tmp_path.glob("page*.png"))
