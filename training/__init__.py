"""Training and qualification: curricula, assignments, records and the check that nobody untrained
signs.
"""
