def test_live_server_answers_health(live_server, tenant):
    import httpx

    response = httpx.get(live_server.url + "/healthz")
    assert response.status_code == 200
    with tenant.client(live_server.url) as client:
        response = client.get("/v1/tp/user")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["user"]["email"] == tenant.user_email
