from django.urls import path

from controlsite.accounts import manage_views, views

app_name = "accounts"

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/verify/", views.mfa_verify_view, name="mfa_verify"),
    path("mfa/enrol/", views.mfa_enrol_view, name="mfa_enrol"),
    path("logout/", views.logout_view, name="logout"),
    path("", views.account_view, name="account"),
    path("password/", views.password_change_view, name="password_change"),
    path("tokens/new/", manage_views.token_create, name="token_create"),
    path("tokens/<int:pk>/revoke/", manage_views.token_revoke, name="token_revoke"),
    path("users/", manage_views.user_list, name="users"),
    path("users/new/", manage_views.user_create, name="user_create"),
    path("users/<int:pk>/", manage_views.user_detail, name="user_detail"),
    path("users/<int:pk>/<slug:action>/", manage_views.user_action, name="user_action"),
]
