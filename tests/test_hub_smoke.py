from huggingface_hub import HfApi


def test_whoami_and_create(hub, write_token, unique_name):
    api = HfApi(token=write_token)
    assert api.whoami()["name"] == "alice"
    url = api.create_repo(f"alice/{unique_name}", repo_type="dataset")
    assert url.repo_id == f"alice/{unique_name}"
