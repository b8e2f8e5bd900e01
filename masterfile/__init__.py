"""Products and their POC/MM master files: versions, review and approval, the site annex, PDF
export for the MHRA.
"""
