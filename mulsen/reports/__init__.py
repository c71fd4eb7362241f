"""Reports people look at: self-contained HTML pages (plots drawn off-screen, pictures embedded) for
evaluations (``mulsen evaluate --report``) and inspections (``mulsen detect --report``)."""

GALLERY_SAMPLES = 8  # gallery rows per category in an evaluation report (errors first); each is one picture row
QA_SAMPLES = 6  # anomalous samples per category in a dataset report's QA gallery
