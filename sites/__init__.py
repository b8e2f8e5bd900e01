"""Spoke sites: the register, their lifecycle from proposal to cessation, memberships, equipment
and site audits.
"""
