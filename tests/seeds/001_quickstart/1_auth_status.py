import os, requests
res = requests.get(
'https://api.pathbound.ai/v1/auth/status',
headers={'Authorization': f"Bearer {os.environ['PATHBOUND_API_KEY']}"},
)
print(res.json())
