"""Deviations, OOS investigations, CAPA, change control and complaints."""
