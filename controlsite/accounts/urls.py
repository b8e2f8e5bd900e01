from django.urls import path

from controlsite.accounts import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.mfa_verify_view, name="mfa_verify"),
    path("mfa/enrol/", views.mfa_enrol_view, name="mfa_enrol"),
    path("logout/", views.logout_view, name="logout"),
    path("", views.account_view, name="account"),
    path("password/", views.password_change_view, name="password_change"),
]
