"""The consult report as a PDF: the report's values (model), HTML, wkhtmltopdf in a jail, page
furniture and encryption. Given values, returns bytes: may import parse only (contract
"layers"); the workflow builds the values and stores the PDF."""
