import os, requests
res = requests.get(
'https://api.pathbound.ai/v1/events',
headers={'Authorization': f"Bearer {os.environ['PATHBOUND_API_KEY']}"},
params={'limit': 5, 'sort_dir': 'desc'},
)
for e in res.json()['events']:
    print(e['event'], e.get('url'))
